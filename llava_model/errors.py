"""The model package's user errors: kinds of `llava_types.UserError`, whose one-line message the CLI prints
without a traceback."""

from llava_types import UserError


class CheckpointError(UserError):
    """A checkpoint that is missing, of an unknown format, or whose weights do not match the model."""


class ImageError(UserError):
    """An image that cannot be read or decoded."""


class TemplateError(UserError, ValueError):
    """An unknown conversation template name (also a ValueError, as any bad value passed in code)."""
