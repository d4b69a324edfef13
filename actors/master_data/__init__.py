"""Master-data sync: one canonical record per client and project, each field owned by one system."""

from actors.master_data.actor import SPEC, MasterData
from actors.master_data.cursor import DeltaCursor, MemoryDeltaCursor, RedisDeltaCursor
from actors.master_data.model import DEFAULT_MAPPING, load_master_data_mapping
from actors.master_data.store import MIGRATIONS, MasterDataStore, MemoryMasterDataStore, SqlMasterDataStore

__all__ = [
           "DEFAULT_MAPPING",
           "MIGRATIONS",
           "SPEC",
           "DeltaCursor",
           "MasterData",
           "MasterDataStore",
           "MemoryDeltaCursor",
           "MemoryMasterDataStore",
           "RedisDeltaCursor",
           "SqlMasterDataStore",
           "load_master_data_mapping",
]
