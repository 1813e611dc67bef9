Print("OK\n");
QUIT;
