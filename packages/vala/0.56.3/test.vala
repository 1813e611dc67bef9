void main () {
    print ("OK\n");
}
