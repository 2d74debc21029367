// Placeholder: the demo page (issue 9) lands here.
