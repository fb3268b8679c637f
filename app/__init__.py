"""voix-ingest: call submissions in, exactly one transcription job per call out.

Layout:
    app.edge       the HTTP edge (aiohttp): auth, validation, durable publish
    app.worker     the stream processor (Faust): merges beats, emits jobs
    app.contracts  the shared language: topics, message envelopes, the request schema
    app.ops        operations: API keys, topic admin, logging
"""

__version__ = "0.1.0"
