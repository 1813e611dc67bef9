define(`WORD', `OK')dnl
WORD
