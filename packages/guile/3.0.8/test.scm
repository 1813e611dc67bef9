(display "OK")
(newline)
