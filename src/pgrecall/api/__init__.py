"""What every front end shares: request/response models, access checks, error codes."""
