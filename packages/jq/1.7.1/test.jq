"OK"
