print("OK");
quit
