"""People deciding pending payments: signed one-click tokens, the decision itself, and the pages behind the links."""
