class CargoholdError(Exception):
    """An error whose message a person can act on; shown on pages and in job rows as is."""


class Refused(CargoholdError):
    """A request that breaks a rule (in use, protected, locked...); nothing was changed."""
