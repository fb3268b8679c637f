"""The HTTP edge: authenticate, validate, publish durably, answer 202 or a clear error."""
