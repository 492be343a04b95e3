"""Training: the request a job carries, the trainer that runs in a child process, and the pool that runs it."""
