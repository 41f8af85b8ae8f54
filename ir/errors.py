"""Errors that irshim raises for bad configuration."""


class ConfigError(ValueError):
    """A malformed setting: names the setting, the value and what is accepted."""

    def __init__(self, setting: str, value: object, accepted: str, detail: str = ""):
        self.setting, self.value, self.accepted = setting, value, accepted
        message = f"{setting}={value!r} is invalid"
        if detail:
            message += f": {detail}"
        super().__init__(f"{message}. Accepted: {accepted}")
