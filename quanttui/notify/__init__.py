"""Push notifications of alerts through apprise, with an outbox that loses nothing.

* `urls`: destinations (apprise URLs), their masked names and the secrets to scrub.
* `message`: what a notification says (pair, rule, signed value, threshold, bar time,
  hedge and the trade in the trader's terms), a retraction, a rate-limit summary.
* `outbox`: the `outbox` table's statements (written in the alert's transaction by the
  writer) and the read side for `quanttui notify status`.
* `worker`: `Notifier`, which delivers due rows off the event loop with backoff and
  jitter, a per-destination token bucket and a cap on attempts.

Nothing here imports textual; apprise is imported only when a destination is used.
"""
