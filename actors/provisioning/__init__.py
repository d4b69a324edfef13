"""ERP-triggered provisioning: a project in the ERP gets its workspace on the document platform."""

from actors.provisioning.actor import SPEC, Provisioning
from actors.provisioning.store import MemoryProvisioningStore, ProvisioningStore, RedisProvisioningStore

__all__ = ["SPEC", "MemoryProvisioningStore", "Provisioning", "ProvisioningStore", "RedisProvisioningStore"]
