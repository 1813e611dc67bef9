(print "OK")
