"""Load benchmark of the chat backend against a stock Node socket.io 4 server (issue 3).

`python -m bench` (or `./taskw bench`); see bench/README.md.
"""
