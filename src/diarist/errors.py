"""Exceptions raised by diarist. Every one carries a message meant for the end user."""


class DiaristError(Exception):
    """Base class of every error diarist raises on purpose."""


class ModelNotInstalledError(DiaristError):
    """Pretrained weights are missing or do not match their expected sha256."""


class AudioError(DiaristError):
    """An input could not be turned into audio."""


class AudioFileNotFoundError(AudioError):
    pass


class EmptyAudioFileError(AudioError):
    pass


class NotAudioError(AudioError):
    """The file is not media ffmpeg can read, or it has no audio track."""


class CorruptAudioError(AudioError):
    pass


class ZeroLengthAudioError(AudioError):
    """The file decodes, but to zero samples."""


class StoreUnavailableError(DiaristError):
    """The job database could not be reached or stayed locked: a temporary condition, worth a retry."""


class StorageFullError(DiaristError):
    """The disk holding the service's state has no room left."""
