"""Data: decoding, folder layouts' helpers, caching, resumable order, on-device jitter, downloads."""

import warnings

# torchvision 0.29 points users at torchcodec; its image decoders are the ones translate-kit uses.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
