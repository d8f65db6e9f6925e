"""The alert pool: delivers each watch-list alert to its receivers (HTTP webhook, MQTT) as a job, retried
when the receiver may yet take it (down, overloaded, timed out) and not when it refused it for good."""
