// Placeholder: the Switchboard browser client (issue 9) lands here.
