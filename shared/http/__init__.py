"""What every function's FastAPI app is made of: the app factory, authentication, throttling, health, the schema."""
