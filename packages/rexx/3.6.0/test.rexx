say "OK"
