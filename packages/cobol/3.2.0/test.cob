*> Test Program
identification division.
program-id. ok-test.

procedure division.
main.
    display "OK"
    stop run.
