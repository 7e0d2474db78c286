"""The users worker: profiles from token claims and last seen (`cmd.users.*`)."""
