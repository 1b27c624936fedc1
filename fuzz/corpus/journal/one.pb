6
j1 (€Ð•ÿ¼10’!:	2 step(s)Jboot-aPôÓ•ÿ¼1zrun-j1