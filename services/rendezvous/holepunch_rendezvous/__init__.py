"""holepunch rendezvous service: a registry of workers and their public UDP endpoints."""
