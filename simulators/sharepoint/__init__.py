"""The simulated SharePoint tenant, as the Microsoft Graph subset the hub uses: the app (:mod:`.app`), its
routes (:mod:`.routes`; the site, groups, columns and labels in :mod:`.sites`), the drive tree
(:mod:`.drive`) and what Graph layers on it (:mod:`.state`), the records (:mod:`.model`) and change
notifications (:mod:`.notify`)."""

from simulators.sharepoint.app import create_app, run
from simulators.sharepoint.config import BUILTIN_COLUMNS, DEFAULT_GROUPS, SimulatorConfig

__all__ = ["BUILTIN_COLUMNS", "DEFAULT_GROUPS", "SimulatorConfig", "create_app", "run"]
