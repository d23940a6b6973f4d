"""The plugin surface: everything a plugin may import from translate-kit, in one place.

First-party plugins import from here only, exactly as a third party would, so nothing a plugin
needs hides in a private module, and the core may move its internals without breaking plugins.

    from translate_kit.api import Method, Parts, frozen, hookimpl, register_method

Groups:

- registration: `register` (any kind), `register_generator`, `register_discriminator`,
  `register_loss`, `register_dataset`, `register_method`, `register_segmenter`, and the option
  markers `ComponentRef`, `OptionsOf` (with the ready-made `GANLossName`, `LossOptions`), and
  `ComponentBuilder` (what a factory receives to build the component an option names);
- hooks: `hookimpl`;
- the method contract: `Method`, `Parts`, `StepContext`, `BatchSpec`, `Geometry`, `EvalProtocol`, `Role`,
  `OptimizerSettings`, `SizeConstrained`, `Upscaling`, `PixelClassifier`, `InputSpec`,
  `InferenceOption`, `StyleConditioned`, `Configurable`, `SequenceTranslator`, `translate_sequence`,
  `frozen`, `test_time`, `unwrap`;
- the adversarial contract: `AdversarialLoss`, `LOGITS`, `MULTISCALE_LOGITS`, `ENERGY`;
- building blocks: `Norm`, `make_norm`, `conv_bias`, `init_weights`, `check_image_batch`;
- data: `read_image`, `list_images`, video files (`read_video`, `write_video`, `iter_video`,
  `VideoWriter`, `VIDEO_EXTENSIONS`), `to_unit_range`, `from_unit_range`, `PairedJitter`,
  `Palette`, `FACADES`, `decode_palette`, `decode_index_image`, `encode_palette`;
- video: `warp`, `flow_valid`, `pixel_grid`, `warping_error` (flow warping and the temporal-consistency
  metric) and `FrameSequences` (what `tkit eval` needs of a data set of frame sequences);
- recipes, models and checkpoints (for commands such as `tkit convert`): `Recipe`, `load_recipe`,
  `build_method`, `checkpoint_dict`, `atomic_save`, `read_model`, `SavedModel`, `get_plugin_manager`,
  `Registry`;
- training and inference internals that tools time or reuse (`tkit bench`, `tkit features`): `Trainer`,
  `Translator`, `build_dataset`, `make_loader`, `eval_copy`, `compiled_nets`, `keep_freed_memory`,
  `write_synth_facades`, `render_facade`;
- the command line: `cli_command`, `session`, `find_recipe`, `error_console`;
- errors: `TranslateKitError` and its subclasses, `did_you_mean`.
"""

from __future__ import annotations

from typing import Annotated, Any

from translate_kit import __version__
from translate_kit.accel import compiled_nets, eval_copy
from translate_kit.adversarial import ENERGY, LOGITS, MULTISCALE_LOGITS, AdversarialLoss
from translate_kit.allocator import keep_freed_memory
from translate_kit.build import build_method, select_device
from translate_kit.cli.common import cli_command, error_console, find_recipe, session
from translate_kit.data.io import list_images, read_image
from translate_kit.data.jitter import PairedJitter, from_unit_range, to_unit_range
from translate_kit.data.loading import build_dataset, make_loader
from translate_kit.data.synth import render_facade, write_synth_facades
from translate_kit.data.video import VIDEO_EXTENSIONS, VideoWriter, iter_video, read_video, write_video
from translate_kit.errors import (
    CheckpointError,
    DataError,
    ExportError,
    InferenceError,
    OptionError,
    PluginError,
    RecipeError,
    RunFolderError,
    TrainingError,
    TranslateKitError,
    UnknownComponentError,
    did_you_mean,
)
from translate_kit.eval.labels import FACADES, Palette, decode_index_image, decode_palette, encode_palette
from translate_kit.eval.temporal import FrameSequences, flow_valid, pixel_grid, warp, warping_error
from translate_kit.hookspecs import hookimpl
from translate_kit.inference import Translator
from translate_kit.layers import Norm, check_image_batch, conv_bias, init_weights, make_norm
from translate_kit.method import (
    BatchSpec,
    Configurable,
    EvalProtocol,
    Geometry,
    InferenceOption,
    InputSpec,
    Method,
    OptimizerSettings,
    Parts,
    PixelClassifier,
    Role,
    SequenceTranslator,
    SizeConstrained,
    StepContext,
    StyleConditioned,
    Upscaling,
    frozen,
    test_time,
    translate_sequence,
    unwrap,
)
from translate_kit.plugins import get_plugin_manager
from translate_kit.recipe import Recipe, load_recipe
from translate_kit.registry import (
    ComponentBuilder,
    ComponentRef,
    OptionsOf,
    Registry,
    register,
    register_dataset,
    register_discriminator,
    register_generator,
    register_loss,
    register_method,
    register_segmenter,
)
from translate_kit.train.checkpoint import SavedModel, atomic_save, checkpoint_dict, read_model
from translate_kit.train.trainer import Trainer

__all__ = [
    "ENERGY",
    "FACADES",
    "LOGITS",
    "MULTISCALE_LOGITS",
    "VIDEO_EXTENSIONS",
    "AdversarialLoss",
    "BatchSpec",
    "CheckpointError",
    "ComponentBuilder",
    "ComponentRef",
    "Configurable",
    "DataError",
    "EvalProtocol",
    "ExportError",
    "FrameSequences",
    "GANLossName",
    "Geometry",
    "InferenceError",
    "InferenceOption",
    "InputSpec",
    "LossOptions",
    "Method",
    "Norm",
    "OptimizerSettings",
    "OptionError",
    "OptionsOf",
    "PairedJitter",
    "Palette",
    "Parts",
    "PixelClassifier",
    "PluginError",
    "Recipe",
    "RecipeError",
    "Registry",
    "Role",
    "RunFolderError",
    "SavedModel",
    "SequenceTranslator",
    "SizeConstrained",
    "StepContext",
    "StyleConditioned",
    "Trainer",
    "TrainingError",
    "TranslateKitError",
    "Translator",
    "UnknownComponentError",
    "Upscaling",
    "VideoWriter",
    "__version__",
    "atomic_save",
    "build_dataset",
    "build_method",
    "check_image_batch",
    "checkpoint_dict",
    "cli_command",
    "compiled_nets",
    "conv_bias",
    "decode_index_image",
    "decode_palette",
    "did_you_mean",
    "encode_palette",
    "error_console",
    "eval_copy",
    "find_recipe",
    "flow_valid",
    "from_unit_range",
    "frozen",
    "get_plugin_manager",
    "hookimpl",
    "init_weights",
    "iter_video",
    "keep_freed_memory",
    "list_images",
    "load_recipe",
    "make_loader",
    "make_norm",
    "pixel_grid",
    "read_image",
    "read_model",
    "read_video",
    "register",
    "register_dataset",
    "register_discriminator",
    "register_generator",
    "register_loss",
    "register_method",
    "register_segmenter",
    "render_facade",
    "select_device",
    "session",
    "test_time",
    "to_unit_range",
    "translate_sequence",
    "unwrap",
    "warp",
    "warping_error",
    "write_synth_facades",
    "write_video",
]

# A method option `gan_mode` naming the adversarial loss that scores the recipe's [discriminator],
# and `gan_options` holding that loss's options: both are checked when the recipe is loaded.
GANLossName = Annotated[str, ComponentRef("loss", adversarial_for="discriminator")]
LossOptions = Annotated[dict[str, Any] | None, OptionsOf("gan_mode")]
