# Further case: a background sleeper inherits stdout; the main program prints and exits 0.
sleep 60 &
( setsid sleep 60 & ) &
echo "main done"
exit 0
