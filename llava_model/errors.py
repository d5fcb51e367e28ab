"""Errors that carry a one-line message meant for the user (the CLI prints it without a traceback)."""


class UserError(Exception):
    """Bad input from the user: a wrong path, name, file or value. The message says what and where."""


class CheckpointError(UserError):
    """A checkpoint that is missing, of an unknown format, or whose weights do not match the model."""


class ImageError(UserError):
    """An image that cannot be read or decoded."""


class TemplateError(UserError, ValueError):
    """An unknown conversation template name (also a ValueError, as any bad value passed in code)."""
