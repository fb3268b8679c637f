"""The stream processor: merges beats per call and emits one transcription job per call."""
