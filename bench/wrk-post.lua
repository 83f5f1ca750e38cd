-- wrk script for the receiver-capacity check of bench/run.sh: the same kind
-- of request the outbox sends (POST, ~200-byte JSON body, a webhook-id).
-- The id is constant and does not look like an outbox one (msg_<id>), so
-- the analysis of the access log ignores these requests.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["webhook-id"] = "wrk_capacity"
wrk.body = '{"ts": 1700000000.123456, "note": "'
    .. string.rep("x", 104)
    .. '", "total": 123.45, "customer": 12345, "order_id": 123456}'
