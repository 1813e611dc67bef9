puts("OK")
