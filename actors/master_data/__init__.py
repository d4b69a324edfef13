"""Master-data sync: one canonical record per client and project, each field owned by one system."""

from actors.master_data.actor import SPEC, MasterData
from actors.master_data.model import DEFAULT_MAPPING, load_master_data_mapping
from actors.master_data.store import MasterDataStore, MemoryMasterDataStore, RedisMasterDataStore

__all__ = ["DEFAULT_MAPPING", "SPEC", "MasterData", "MasterDataStore", "MemoryMasterDataStore",
           "RedisMasterDataStore", "load_master_data_mapping"]
