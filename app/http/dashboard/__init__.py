"""/dashboard: the web dashboard's controller and, in static/, its page, script and styles."""
