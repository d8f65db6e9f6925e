"""The floor every role stands on, knowing no role: settings and defaults, the types and job schemas that
cross stages, box geometry, plate regions, the frame store, queues and the stage worker, the plate and
frames logs, metrics."""
