# translate-kit's test kit: the device and dtype options and fixtures, tiny data, contract checks.
pytest_plugins = ["translate_kit.testing"]
