"""One handle per kind of service in the stack, on one base (`base.Service`)."""
