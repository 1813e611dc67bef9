println("OK")
