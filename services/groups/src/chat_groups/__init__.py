"""The groups worker: groups, members, roles and permissions (`cmd.groups.*`)."""
