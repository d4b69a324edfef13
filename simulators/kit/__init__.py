"""What every simulator shares: the app factory with its ``/_sim`` admin routes (:mod:`.app`), the error
every route may raise (:mod:`.errors`), fault injection (:mod:`.faults`), the webhook outbox (:mod:`.outbox`)
and ``Idempotency-Key`` replays (:mod:`.idempotency`)."""
