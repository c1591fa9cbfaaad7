"""The project's own error types: the commands print these as one line and exit non-zero.

Anything else is a bug or an environment problem and keeps its traceback.
"""


class UserError(Exception):
  """A failure the user can fix (bad input, config, path or data); str() is one line."""
