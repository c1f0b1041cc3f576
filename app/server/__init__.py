"""`cadence serve`: the OpenAI Realtime API over a WebSocket, for clients that already speak it."""
