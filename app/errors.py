"""The project's one error family: everything a user can cause (bad files, options, data, models, policies).

Entry points (`python -m app`, `train.py`, the console) catch `GloveSafetyError` and show its message as one line
(exit code 2 on the command line); any other exception is a bug and keeps its traceback.
"""


class GloveSafetyError(ValueError):
    """A problem the user can fix; the message says what, in one line."""


class DatasetError(GloveSafetyError):
    """The dataset YAML or the data it points at cannot be used."""


class TrainingError(GloveSafetyError):
    """Bad training options or data: nothing was trained."""


class ModelError(GloveSafetyError):
    """The model file or a setting for it cannot be used."""


class ModelExportError(GloveSafetyError):
    """A checkpoint could not be exported, or the export is not usable."""


class SourceError(GloveSafetyError):
    """An image, folder, video, camera or stream cannot be read at all."""


class PolicyError(GloveSafetyError):
    """A safety policy file, or its fit to the model, is wrong."""


class RecordsError(GloveSafetyError):
    """Nothing to export from the records, the selection is invalid, or the workbook cannot be written there."""


class ServiceError(GloveSafetyError):
    """A request to the detection service cannot be served (no model, bad upload, ended live run)."""


class ConfigError(GloveSafetyError):
    """A camera monitor configuration cannot be used; the message names the key."""
