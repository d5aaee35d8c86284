"""The feedback loop: prediction ids that carry what a label join needs, the labelled window
shared by the workers, and ``POST /v1/feedback`` / ``GET /v1/quality``."""
