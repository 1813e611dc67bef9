MODULE main;

FROM StrIO IMPORT WriteString, WriteLn;

BEGIN
   WriteString('OK');
   WriteLn
END main.
