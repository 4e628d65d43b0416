"""Agency-side programs: council, police, NRM connectors and subscriber delivery."""
