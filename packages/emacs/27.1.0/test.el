(princ "OK\n")
