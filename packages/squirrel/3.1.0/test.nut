print("OK\n");
