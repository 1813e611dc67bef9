/* Compile stage: an endless include. */
#include "/dev/urandom"
int main(void) { return 0; }
