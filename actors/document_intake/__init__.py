"""Document intake: the document platform's change notifications become document events."""

from actors.document_intake.actor import SPEC, DocumentIntake
from actors.document_intake.store import IntakeStore, MemoryIntakeStore, RedisIntakeStore
from actors.document_intake.subscription import DriveSubscription, SubscriptionKeeper, ensure_subscription

__all__ = ["SPEC", "DocumentIntake", "DriveSubscription", "IntakeStore", "MemoryIntakeStore", "RedisIntakeStore",
           "SubscriptionKeeper", "ensure_subscription"]
